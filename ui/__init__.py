"""The Gradio app's tabs, one module each (layout + events); `common` holds what they share. The core
(`diffsketch_core`) never imports anything from here."""
