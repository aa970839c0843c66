"""What the deployed container needs from liftdeploy: standard library only, no pydantic.

The rendered image adds exactly this package (`add_local_python_source("liftdeploy.runtime")`
would pull the parent package too, so the app copies these files; see the template).
"""
