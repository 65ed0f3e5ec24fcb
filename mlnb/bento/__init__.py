"""``mlnb build``: a run's model and serve code become a versioned, validated BentoML service.

:func:`mlnb.bento.builder.build` is the entry point; the steps live in one module each
(inputs, serve code, credential scan, ONNX conversion and agreement, pins, versions,
rendering, the build folder, and the BentoML edge in :mod:`mlnb.bento.bentoml_store`).
"""
