"""The officers' dashboard: login links and sessions, the overview, exports and reports over HTTP."""
