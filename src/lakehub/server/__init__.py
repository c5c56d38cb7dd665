"""Everything ``lakehub up`` runs. Rooms move here one at a time: ``db/`` (the metadata models
and their migrations) is the first; the areas and the web layer follow."""
