"""Publishing an image to a class: the roster, the sharing plan and its application, the record."""
