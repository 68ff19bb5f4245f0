"""The HTTP API: thin handlers over the actions.

Each module declares its routes in a :class:`~bankhub.http.handler.RouteTable`, at the
handler, with how the route authenticates; :mod:`bankhub.http.handler` also holds what
every handler reads a request with (the JSON body, the client's address, the hub).
"""
