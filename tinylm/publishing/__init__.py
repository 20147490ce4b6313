"""The publishing wing: the Hugging Face Hub (publishing/hub.py), the model card (publishing/card.py) and
exports to other libraries' formats (publishing/export.py).
"""
