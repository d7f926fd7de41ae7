"""HTTP entrypoint: parse, call a service, render. See ``services.api.app``."""
