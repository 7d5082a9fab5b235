"""Checks of the deployment artefacts: k8s/, docker/, monitoring/ and the generated dashboards."""
