"""Training stages (one module per stage) and the scaffolding they share (`common.py`, `state.py`)."""
