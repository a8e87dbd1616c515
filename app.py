"""DiffSketch Studio: the Gradio app. This file assembles the tabs; each tab's layout and events live in `ui/`,
every computation in `diffsketch_core`.

Run: python app.py   (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override host and port)
"""

from __future__ import annotations

import gradio as gr

from ui import backbone_panel, classic, common, photo, rectify, strokes, style


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="DiffSketch Studio", delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# DiffSketch Studio\nPhotos to sketches, in classic styles or in your own, learned from one example.")
        backbone = gr.State(None)
        style_state = gr.State(None)
        source, demo_box, load, status = backbone_panel.build()
        with gr.Tabs():
            with gr.Tab("Classic sketch", id="classic"):
                classic.build()
            with gr.Tab("Style", id="style"):
                style_banner, iterations = style.build(backbone, style_state)
            with gr.Tab("Photo -> Sketch", id="photo"):
                photo_banner = photo.build(backbone, style_state)
            if common.STROKES_READY:  # tabs appear only with the checkpoints they need
                with gr.Tab("Draw strokes", id="strokes"):
                    strokes.build()
                with gr.Tab("Rectify", id="rectify"):
                    rectify.build()
        load.click(backbone_panel.load_backbone_ui, [source, demo_box], [backbone, status, style_banner, photo_banner])
        # demo mode trains in seconds: start the slider where a try-out makes sense
        demo_box.change(lambda d: gr.update(value=30 if d else 1200), [demo_box], [iterations])
        demo.unload(common.cleanup)
    demo.queue(max_size=32, default_concurrency_limit=2)
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.launch(max_file_size="50mb")
