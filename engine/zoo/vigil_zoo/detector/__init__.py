"""The one-class YOLOv8-layout test detector (a fixture of the Rust tests, not a shipped model)."""
