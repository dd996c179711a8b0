"""Development and operations tools that no Lambda function runs: the local runtime, the ``sluice`` and
``sluice-migrate`` commands, redrive, systems admin and the fault switches of ``make reliability``.

Installed into ``.venv`` by ``pyproject.toml``; never packaged into the Lambda layer (a test builds the layer and
checks).
"""
