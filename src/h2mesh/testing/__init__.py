"""Testing services: an in-process channel, handler contexts, and a pytest plugin.

::

    async with ChannelFor([Greeter()]) as channel:
        greeter = channel.stub(Greeter)
        assert (await greeter.say_hello(HelloRequest("x"))).message == "Hello, x!"

``ChannelFor`` serves the services from a real :class:`~h2mesh.Server` over connections
that live in memory, so every call goes through the HTTP/2 engine, the router, the
protocol (Connect, gRPC or gRPC-Web) and the codecs, as over a socket, but opens no port.
``make_context`` builds the :class:`~h2mesh.Context` a handler receives, to call it as a
plain coroutine. ``ServerThread`` runs a real server on a free port in a thread of its own,
for peers that need a socket (curl, grpcio, a browser). The pytest plugin (active once
h2mesh is installed) adds the ``h2mesh_server`` and ``h2mesh_registry`` fixtures; see
``h2mesh.testing.plugin``.
"""

from ._channel import ChannelFor
from ._context import make_context
from ._thread import ServerThread, loop_factory

__all__ = ["ChannelFor", "ServerThread", "loop_factory", "make_context"]
