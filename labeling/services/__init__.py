"""Services: every write of the app goes through a function here (``<entity>_<action>``)."""
