"""Enrichment engines: what a finished session's media says, as plain results.

- `ocr`: Tesseract over pictures (`OcrEngine`, `ocr_image`) and the video frames worth
  reading (`key_frames`).
- `transcribe`: faster-whisper over the joined audio (`Transcriber`), and `AudioTimeline`
  from audio-file time to media offsets.
- `chapters`: chapter boundaries, titles and summaries (`draft_chapters`, `Summariser`).

They read files and arrays and return frozen dataclasses; nothing here touches the store.
Modules are imported on their own (`from taskerino.enrich.ocr import ...`) so that using one
engine does not load the others' libraries.
"""
