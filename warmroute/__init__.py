"""The application: artefact directories (``artifacts``), the resumable pipeline (``pipeline``), reports and plots
(``report``), deployment (``deploy``) and the ``warmroute`` command (``cli``). docs/architecture.md draws the layers."""
