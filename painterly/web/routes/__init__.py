"""The studio's routes, a module per group, each one FastAPI router: the page and the API reference
(:mod:`.pages`), settings and examples (:mod:`.catalog`), runs (:mod:`.runs`), their images and live
events (:mod:`.media`), cancel, rerun and delete (:mod:`.actions`)."""
