"""The worker runtime a Bento carries: what a generated ``service.py`` runs at serve time.

``runtime`` reads the Bento's ``mlnb_service.json`` (:class:`~mlnb.serving.runtime.ServiceSpec`),
loads the model and starts the worker; ``http`` answers ``/predict`` as bare ASGI (body limits
and deadlines, request ids, errors through :func:`mlnb.errors.error_response`); ``schema``,
``validation`` and ``wire_values`` check rows against the training schema; ``answer`` runs the
serve code around the model (``onnx_model``: the ONNX adapter that answers like the
scikit-learn model); ``row_model`` is the OpenAPI page's row; ``explaining`` answers
``/explain``, ``feedback`` takes labels on ``/feedback``; ``release``, ``release_rules`` and
``release_state`` serve two versions in one Bento (shadow or canary, promoted or rolled back by
rules); ``info`` is what the monitoring hooks (:mod:`mlnb.monitoring`) are told.

BentoML imports ``service.py`` in its arbiter as well as in each worker, so what a service
imports at the top (``runtime``, ``http``, ``schema``, ``row_model``, ``info``, ``feedback``,
``release``) imports neither numpy nor pandas; ``answer``, ``validation``, ``wire_values`` and
``onnx_model`` do, in the worker. Nothing here imports BentoML at the top, nor any mlnb module
outside this package, :mod:`mlnb.monitoring` and what they import at module level: a Bento
carries exactly those files as source (:func:`mlnb.bento.folder.runtime_files`).
"""
