"""Retouch for GIMP 3: procedures under Filters > Enhance > Retouch AI, and the PDB procedure retouch-enhance."""
