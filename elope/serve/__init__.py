"""``elope serve``: the exported one-pass graph over HTTP, on onnxruntime, numpy and Pillow only.

Nothing in this package imports torch, nor of the rest of elope anything but the torch-free
:mod:`elope.pixels`, :mod:`elope.exported` and :mod:`elope.page_assets` (``tests/test_serve_imports.py``
checks it): :mod:`.images` decodes uploads as ``elope predict`` does, :mod:`.uploads` reads request bodies under the
limits, :mod:`.model` runs the ONNX file and shapes answers, :mod:`.batching` gathers concurrent images
into one onnxruntime call, :mod:`.app` is the Starlette application, :mod:`.openapi` its description,
:mod:`.server` runs it with uvicorn; ``page.html`` is the web page of ``GET /`` (its look, cards and
drawing script, shared with ``elope web``'s page, filled in from :mod:`elope.page_assets`).
"""
