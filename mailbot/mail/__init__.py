"""Pure functions of a mail: parsing, classification, routing, extraction, masking."""
