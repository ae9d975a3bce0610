"""uvicorn's ``Server``, stopping as soon as it is asked to instead of on its clock.

uvicorn polls ``should_exit`` every 0.1 s, then, on shutdown, sleeps a fixed 0.1 s after
asking the open connections to close and polls them every 0.1 s. A process that starts a
sandbox for one run and stops it at the end (the main job) waited 0.15–0.2 s for nothing.
Here the main loop wakes at once when ``request_exit()`` is called from another thread, and
shutdown watches the connections close with a short poll. What shutdown does is uvicorn's:
stop listening, ask every connection to close (an idle keep-alive connection closes at once,
a busy one after its response), wait for them and the running tasks up to
``timeout_graceful_shutdown``, cancel what is left, then the lifespan's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import uvicorn

TICK_S = 0.1  # uvicorn's own tick: the per-tick duties (on_tick) keep their rhythm
SHUTDOWN_POLL_S = 0.002


class PromptServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def request_exit(self) -> None:
        """Ask the server to stop; safe from any thread, before or after it started."""
        with self._lock:
            self.should_exit = True
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake = wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), TICK_S)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_graceful_shutdown
        state = self.server_state
        while (state.connections or state.tasks) and not self.force_exit:
            if loop.time() >= deadline:
                for task in state.tasks:
                    task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
                break
            await asyncio.sleep(SHUTDOWN_POLL_S)
        else:
            for server in self.servers:
                await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()
