"""Runtime support imported by the services ``mlnb build`` generates.

Request validation against the training schema (:mod:`mlnb.serving.schema`), the ONNX adapter
that answers like the scikit-learn model (:mod:`mlnb.serving.onnx_model`), the answer a request
gets (:mod:`mlnb.serving.answer`) and the HTTP layer (:mod:`mlnb.serving.http`). Nothing here
imports BentoML except :mod:`mlnb.serving.http`; a Bento carries these files as source.
"""
