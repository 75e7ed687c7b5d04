"""Live recordings: the recorders of a session, their shared media clock, and the registry."""
