"""The in-notebook panel (%mlnb): core-side state and an ipywidgets view."""
