"""HTTP only: the app factory, routers, the auth dependency and error mapping."""
