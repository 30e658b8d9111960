# Dense.forward asks for memory, 256 MiB at a time, up to 3 GiB (over the 2 GiB limit).
class Dense(Dense):
    def forward(self, inputs):
        hoard = [np.zeros(2 ** 25) for _ in range(12)]
        return super().forward(inputs) + 0 * len(hoard)
