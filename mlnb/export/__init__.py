"""Taking a notebook's pipeline beyond one machine: Kubeflow Pipelines."""
