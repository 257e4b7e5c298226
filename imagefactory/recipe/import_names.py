"""Import names are not distribution names: the small, documented table between the two.

`DIST_IMPORTS` maps a distribution (canonical name) to the top-level modules it installs when they differ
from its name (`scikit-learn` installs `sklearn`); `PREFERRED` names the distribution to add for a
missing import when several provide it (`cv2`: opencv-python, not the -headless or -contrib variants) or
when the import's own name on PyPI is another project (`yaml`, `PIL`, `magic` …). Beyond the table a
distribution provides the module of its own name, with dashes as underscores (`python-magic` is also
tried as `magic`, `pysqlite3-binary` as `pysqlite3`). The smoke test measures the truth in the image.
Pure data and two lookups.
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name

DIST_IMPORTS: dict[str, tuple[str, ...]] = {
    "scikit-learn": ("sklearn",), "scikit-image": ("skimage",), "scikit-bio": ("skbio",),
    "pyyaml": ("yaml",), "ruamel-yaml": ("ruamel",), "pillow": ("PIL",), "beautifulsoup4": ("bs4",),
    "python-dateutil": ("dateutil",), "opencv-python": ("cv2",), "opencv-python-headless": ("cv2",),
    "opencv-contrib-python": ("cv2",), "opencv-contrib-python-headless": ("cv2",), "py-opencv": ("cv2",),
    "pytorch": ("torch",), "tensorflow-cpu": ("tensorflow",), "tensorflow-gpu": ("tensorflow",),
    "protobuf": ("google",), "mysqlclient": ("MySQLdb",), "psycopg2-binary": ("psycopg2",),
    "python-dotenv": ("dotenv",), "attrs": ("attr", "attrs"), "pyzmq": ("zmq",), "msgpack-python": ("msgpack",),
    "ipython": ("IPython",), "gitpython": ("git",), "pygithub": ("github",), "pyjwt": ("jwt",),
    "python-louvain": ("community",), "pytables": ("tables",), "faiss-cpu": ("faiss",), "faiss-gpu": ("faiss",),
    "pyopenssl": ("OpenSSL",), "pycryptodome": ("Crypto",), "pycryptodomex": ("Cryptodome",),
    "dnspython": ("dns",), "gdal": ("osgeo",), "matplotlib": ("matplotlib", "mpl_toolkits", "pylab"),
    "pyserial": ("serial",), "pyusb": ("usb",), "wxpython": ("wx",), "python-docx": ("docx",),
    "python-pptx": ("pptx",), "pymupdf": ("fitz", "pymupdf"), "pyshp": ("shapefile",), "biopython": ("Bio",),
    "umap-learn": ("umap",), "python-igraph": ("igraph",), "python-levenshtein": ("Levenshtein",),
    "python-slugify": ("slugify",), "websocket-client": ("websocket",), "pysqlite3-binary": ("pysqlite3",),
    "python-magic": ("magic",), "markdown": ("markdown",), "jinja2": ("jinja2",), "typing-extensions":
    ("typing_extensions",), "setuptools": ("setuptools", "pkg_resources", "_distutils_hack"),
    "google-cloud-storage": ("google",), "netcdf4": ("netCDF4",), "pyqt5": ("PyQt5",), "pyside6": ("PySide6",),
    "basemap": ("mpl_toolkits",), "pywavelets": ("pywt",), "lxml": ("lxml",), "pydantic": ("pydantic",),
}

# a missing import -> the distribution to add (where the import's own name is not it on PyPI)
PREFERRED: dict[str, str] = {
    "sklearn": "scikit-learn", "skimage": "scikit-image", "skbio": "scikit-bio", "yaml": "PyYAML",
    "PIL": "Pillow", "bs4": "beautifulsoup4", "dateutil": "python-dateutil", "cv2": "opencv-python",
    "MySQLdb": "mysqlclient", "psycopg2": "psycopg2-binary", "dotenv": "python-dotenv", "attr": "attrs",
    "zmq": "pyzmq", "IPython": "ipython", "git": "GitPython", "github": "PyGithub", "jwt": "PyJWT",
    "community": "python-louvain", "faiss": "faiss-cpu", "OpenSSL": "pyOpenSSL", "Crypto": "pycryptodome",
    "Cryptodome": "pycryptodomex", "dns": "dnspython", "osgeo": "GDAL", "serial": "pyserial", "usb": "pyusb",
    "wx": "wxPython", "docx": "python-docx", "pptx": "python-pptx", "fitz": "PyMuPDF", "shapefile": "pyshp",
    "Bio": "biopython", "umap": "umap-learn", "Levenshtein": "python-Levenshtein", "slugify": "python-slugify",
    "websocket": "websocket-client", "pysqlite3": "pysqlite3-binary", "magic": "python-magic",
    "mpl_toolkits": "matplotlib", "pylab": "matplotlib", "pkg_resources": "setuptools", "netCDF4": "netCDF4",
    "pywt": "PyWavelets", "ruamel": "ruamel.yaml",
    # removed from the standard library, kept alive on PyPI
    "distutils": "setuptools", "asyncore": "pyasyncore", "asynchat": "pyasynchat", "cgi": "legacy-cgi",
}

# well-known dependencies (canonical names): an import of one of these is taken as installed with the
# distribution that depends on it ("dependency": the smoke test measures it, a failure only warns)
DEPENDS: dict[str, tuple[str, ...]] = {
    "scikit-learn": ("scipy", "joblib", "threadpoolctl", "numpy"), "scipy": ("numpy",),
    "pandas": ("numpy", "python-dateutil", "pytz"), "matplotlib": ("numpy", "cycler", "kiwisolver", "pyparsing",
                                                                   "python-dateutil"),
    "seaborn": ("matplotlib", "pandas", "numpy"), "statsmodels": ("scipy", "pandas", "patsy", "numpy"),
    "xarray": ("numpy", "pandas"), "geopandas": ("pandas", "shapely", "pyproj", "numpy"),
    "scikit-image": ("numpy", "scipy", "networkx", "pillow", "imageio", "tifffile"),
    "requests": ("urllib3", "idna", "certifi", "charset-normalizer"), "pydotplus": ("pyparsing",),
    "pydot": ("pyparsing",), "netcdf4": ("numpy", "cftime"), "h5py": ("numpy",), "numba": ("numpy", "llvmlite"),
    "sqlalchemy": ("greenlet",), "jinja2": ("markupsafe",), "flask": ("jinja2", "werkzeug", "click"),
    "tensorflow": ("numpy", "keras", "absl-py", "h5py"), "torch": ("numpy", "sympy", "networkx", "jinja2"),
    "spotpy": ("numpy", "scipy", "pandas"),
}

PREFIXES = re.compile(r"^(python-|py-)")
SUFFIXES = re.compile(r"-(binary|headless|cpu|gpu)$")


def provides(dist: str) -> frozenset[str]:
    """The top-level import names distribution `dist` is taken to install (lower-cased for comparison)."""
    key = canonicalize_name(dist)
    names = {key.replace("-", "_"), SUFFIXES.sub("", PREFIXES.sub("", key)).replace("-", "_")}
    names |= set(DIST_IMPORTS.get(key, ()))
    return frozenset(n.lower() for n in names)


def dependencies(dist: str) -> tuple[str, ...]:
    """The well-known dependencies of `dist` (canonical names), one level deep."""
    return DEPENDS.get(canonicalize_name(dist), ())


def preferred(module: str) -> str | None:
    """The distribution to add for a missing import, when the table knows one."""
    return PREFERRED.get(module)
