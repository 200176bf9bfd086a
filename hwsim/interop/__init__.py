"""The field's own formats: SCALE-Sim ``.cfg`` files and topology CSVs, read and written."""
