"""DiffSketch Studio: the Gradio app. This file assembles the tabs; each tab's layout and events live in `ui/`,
every computation in `diffsketch_core`.

Run: python app.py   (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override host and port)
"""

from __future__ import annotations

import gradio as gr

from ui import backbone_panel, classic, common, photo, picture, rectify, strokes, style

QUEUE_SIZE = 32
MAX_FILE_SIZE = "50mb"  # any upload; a style zip is well under it


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="DiffSketch Studio", delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# DiffSketch Studio\nPhotos to sketches, in classic styles or in your own, learned from one example.")
        backbone = gr.State(None)
        style_state = gr.State(None)
        source, demo_box, load, status = backbone_panel.build()
        strokes_parts = rectify_parts = None  # the hand-overs to Sketch -> Picture
        with gr.Tabs() as tabs:
            with gr.Tab("Classic sketch", id="classic"):
                classic.build()
            with gr.Tab("Style", id="style"):
                style_banner, iterations = style.build(backbone, style_state)
            with gr.Tab("Photo -> Sketch", id="photo"):
                photo_banner = photo.build(backbone, style_state)
            if common.STROKES_READY:  # tabs appear only with the checkpoints they need
                with gr.Tab("Draw strokes", id="strokes"):
                    strokes_parts = strokes.build()
                with gr.Tab("Rectify", id="rectify"):
                    rectify_parts = rectify.build()
            with gr.Tab("Sketch -> Picture", id="picture"):
                picture_tab = picture.build(backbone)
        picture.handover(tabs, picture_tab, rectify_parts, strokes_parts)
        load.click(backbone_panel.load_backbone_ui, [source, demo_box], [backbone, status, style_banner, photo_banner],
                   show_progress_on=status).then(common.banner, [backbone], [picture_tab.banner]
                   ).then(style.iterations_for, [backbone], [iterations])
        # demo mode trains in seconds: start the slider where a try-out makes sense
        demo_box.change(lambda d, s: style.iterations_for(backbone_panel.chosen(s, d)), [demo_box, source], [iterations])
        demo_box.change(lambda d: gr.update(value=10 if d else 30), [demo_box], [picture_tab.steps])
        demo.unload(common.cleanup)
    # The queue holds QUEUE_SIZE waiting requests (one more is refused with "queue is full"); each CPU tab runs
    # 2 at a time, the GPU jobs (training, Photo -> Sketch) 1 (ui/style.py, ui/photo.py); budgets.py bounds each.
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2)
    common.harden(demo)  # Gradio's own pre-processing errors become sentences too
    common.start_sweeper()  # request outputs and abandoned sessions' files do not pile up
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.launch(max_file_size=MAX_FILE_SIZE)
