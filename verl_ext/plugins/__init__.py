"""VisPlay's verl plugins, grouped the way verl's recipes group theirs: the entry point (`main_visplay`), its Hydra
configs (`config/`), and the classes that plug into verl (datasets, questioner reward manager, batch-reward trainer,
reasoner reward function, and the frozen reasoner's HTTP client). Importing this package imports nothing of verl.
"""
