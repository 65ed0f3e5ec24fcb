"""Runtime support imported by the services ``mlnb build`` generates.

Request validation against the training schema (:mod:`mlnb.serving.schema`, the checks in
:mod:`mlnb.serving.validation`), the ONNX adapter that answers like the scikit-learn model
(:mod:`mlnb.serving.onnx_model`), the answer a request gets (:mod:`mlnb.serving.answer`) and
the HTTP layer (:mod:`mlnb.serving.http`). BentoML imports a generated ``service.py`` in its
arbiter as well as in each worker, so what it imports at the top (``runtime``, ``http``,
``schema``, ``row_model``, ``info``) imports neither numpy nor pandas; ``answer``,
``validation``, ``wire_values`` and ``onnx_model`` do, in the worker. Nothing here imports
BentoML at the top; a Bento carries these files as source.
"""
