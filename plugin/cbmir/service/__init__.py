"""The Orthanc plugin service: wiring, config, engine, worker, change follower, REST routes.

Only this package touches the orthanc SDK module.
"""
