"""Static files of the desk page (a package only so setuptools ships them as package data)."""
