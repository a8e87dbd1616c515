"""Sketch -> picture (DiffSketching): a drawn, generated or rectified sketch steers Stable Diffusion 1.x.

- `sketch2image`: prompt + sketch -> image, steered by a scribble/lineart ControlNet and/or DiffSketching's sketch
  guidance (the gradient of a sketch perceptual loss between the picture's own extracted sketch and the user's);
- `finetune`: DiffSketching's Algorithm 1 on a few sketch + photo pairs, as a LoRA saved as safetensors;
- `extractor`, `sketch_loss`, `controlnet`, `lora`: the differentiable parts the two stand on.
"""
