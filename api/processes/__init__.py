"""OGC API Processes run by pygeoapi's process manager: hazard exposure and alert targets."""
