"""saed_client: batch-encode activations with a saed server.

    >>> from saed_client import Client
    >>> c = Client("http://127.0.0.1:8080")
    >>> feats = c.encode(X)          # X: (n, d_in) float array, any n
    >>> X_hat = c.decode(feats)

See clients/python/README.md.
"""
from ._client import Client, NotSupportedError, SaedError, WeightsChangedError
from ._csr import SparseRows

__all__ = ["Client", "SaedError", "WeightsChangedError", "NotSupportedError", "SparseRows"]
__version__ = "0.1.0"
