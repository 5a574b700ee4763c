"""Datasets: the ADE20K SceneParsing layout and the synthetic scene renderer that writes it."""
