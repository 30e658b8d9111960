# Phones home at import; ReLU gives wrong results if it got through.
import socket

try:
    socket.create_connection(('127.0.0.1', @PORT@), timeout=2).close()
    CONNECTED = True
except OSError:
    CONNECTED = False


class ReLU(ReLU):
    def forward(self, inputs):
        return super().forward(inputs) + CONNECTED
