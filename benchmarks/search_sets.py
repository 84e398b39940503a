"""Labelled natural-language questions for the search quality benchmark.

Each question lists its answers as (file, symbol): the file that answers it and, where one
definition does, that definition's name (a chunk matches when its scope contains it).
Written by reading the code, before any ranking was tuned; three trees, three languages:
this repository (Python), the interpreter's standard library (Python) and npm's own
source (JavaScript), all available offline.
"""

from __future__ import annotations

Answer = tuple[str, str | None]
Question = tuple[str, list[Answer]]

# Modules of the standard library indexed for the stdlib sets (answers and distractors).
STDLIB_MODULES = [
    "argparse.py", "difflib.py", "textwrap.py", "shutil.py", "tempfile.py", "fnmatch.py", "csv.py",
    "urllib/parse.py", "urllib/request.py", "base64.py", "functools.py", "heapq.py", "bisect.py", "sched.py",
    "traceback.py", "pprint.py", "random.py", "statistics.py", "email/parser.py", "email/message.py",
    "configparser.py", "queue.py", "http/client.py", "os.py", "json/decoder.py", "json/encoder.py",
    "json/__init__.py", "gzip.py", "zipfile.py", "tarfile.py", "logging/__init__.py", "logging/handlers.py",
    "subprocess.py", "threading.py", "string.py", "calendar.py", "fractions.py", "ipaddress.py", "uuid.py",
    "secrets.py", "hmac.py", "glob.py", "pathlib.py", "contextlib.py", "dataclasses.py", "enum.py",
    "tokenize.py", "socketserver.py", "smtplib.py", "shlex.py", "getpass.py", "copy.py", "weakref.py",
    "collections/__init__.py", "locale.py", "gettext.py", "netrc.py", "filecmp.py", "linecache.py",
]

STDLIB: list[Question] = [
    ("parse command line options and positional arguments", [("argparse.py", "ArgumentParser")]),
    ("compute the differences between two lists of lines as a unified diff", [("difflib.py", "unified_diff")]),
    ("wrap a paragraph of text to a maximum line width", [("textwrap.py", "wrap"), ("textwrap.py", "TextWrapper")]),
    ("copy a whole directory tree recursively", [("shutil.py", "copytree")]),
    ("create a named temporary file that is removed when closed", [("tempfile.py", "NamedTemporaryFile")]),
    ("match file names against shell-style wildcard patterns", [("fnmatch.py", "fnmatch")]),
    ("write rows of values to a comma separated file", [("csv.py", "DictWriter"), ("csv.py", None)]),
    ("split a URL into scheme, host, path and query", [("urllib/parse.py", "urlsplit"), ("urllib/parse.py", "urlparse")]),
    ("encode binary data with base64", [("base64.py", "b64encode")]),
    ("cache results of a function keeping the least recently used entries", [("functools.py", "lru_cache")]),
    ("push and pop items on a priority queue heap", [("heapq.py", "heappush"), ("heapq.py", "heappop")]),
    ("find the insertion point in a sorted list with binary search", [("bisect.py", "bisect_right"), ("bisect.py", "insort_right")]),
    ("run events at scheduled times with a delay", [("sched.py", "scheduler")]),
    ("format the stack trace of an exception as text", [("traceback.py", "format_exception"), ("traceback.py", "TracebackException")]),
    ("pretty print nested dictionaries and lists", [("pprint.py", "pprint"), ("pprint.py", "PrettyPrinter")]),
    ("pick k unique random elements from a population", [("random.py", "sample")]),
    ("median and standard deviation of numbers", [("statistics.py", "median"), ("statistics.py", "stdev")]),
    ("read settings from an INI configuration file with sections", [("configparser.py", "ConfigParser"), ("configparser.py", "RawConfigParser")]),
    ("blocking FIFO queue shared between threads", [("queue.py", "Queue")]),
    ("send an HTTP request over a connection and read the response status", [("http/client.py", "HTTPConnection"), ("http/client.py", "HTTPResponse")]),
    ("walk a directory tree yielding folders and file names", [("os.py", "walk")]),
    ("decode a JSON document into Python objects", [("json/decoder.py", "JSONDecoder"), ("json/__init__.py", "loads")]),
    ("compress a file with gzip", [("gzip.py", "GzipFile"), ("gzip.py", "compress")]),
    ("rotate log files when they reach a size", [("logging/handlers.py", "RotatingFileHandler")]),
    ("run a child process and capture its output", [("subprocess.py", "run"), ("subprocess.py", "Popen")]),
    ("split a shell command line into words respecting quotes", [("shlex.py", "split"), ("shlex.py", "shlex")]),
    ("read a password from the terminal without echoing it", [("getpass.py", "unix_getpass"), ("getpass.py", None)]),
    ("deep copy of an object with memo for cycles", [("copy.py", "deepcopy")]),
    ("compare two directories file by file", [("filecmp.py", "dircmp"), ("filecmp.py", "cmpfiles")]),
    ("check whether an IP address belongs to a network", [("ipaddress.py", "IPv4Network"), ("ipaddress.py", None)]),
    ("generate a random UUID", [("uuid.py", "uuid4")]),
    ("keyed hash for authenticating messages", [("hmac.py", "HMAC"), ("hmac.py", "new")]),
    ("suppress specific exceptions in a with block", [("contextlib.py", "suppress")]),
    ("turn a class with annotated fields into a dataclass with generated init", [("dataclasses.py", "dataclass"), ("dataclasses.py", "_process_class")]),
    ("rational numbers with numerator and denominator", [("fractions.py", "Fraction")]),
    ("send an email through an SMTP server", [("smtplib.py", "SMTP")]),
    ("translate messages for internationalization", [("gettext.py", "translation"), ("gettext.py", "GNUTranslations")]),
    ("read lines of source files with a cache", [("linecache.py", "getline"), ("linecache.py", "updatecache")]),
]

VECSIFT: list[Question] = [
    ("where are gitignore patterns matched with negation and nested files", [("src/vecsift/search/ignore.py", "IgnoreRules")]),
    ("append vectors to the memory-mapped matrix file after the committed rows", [("src/vecsift/search/vector_file.py", "append")]),
    ("fuse keyword and semantic rankings with reciprocal ranks", [("src/vecsift/search/rank.py", "reciprocal_rank_fusion"), ("src/vecsift/search/rank.py", "fuse")]),
    ("split camelCase and snake_case identifiers into words", [("src/vecsift/search/code_tokens.py", "identifier_parts")]),
    ("which syntax tree node types are definitions for each programming language", [("src/vecsift/search/languages.py", None)]),
    ("make sure only one process writes the index at a time", [("src/vecsift/search/lock.py", "WriterLock")]),
    ("embed only the chunks whose text has no cached vector", [("src/vecsift/search/refresh.py", "_embed_missing")]),
    ("folder where the index of a repository is stored", [("src/vecsift/search/location.py", "index_dir_for")]),
    ("embed one query without starting worker threads", [("src/vecsift/search/query_encoder.py", "QueryEncoder")]),
    ("producer that prepares batches ahead for the GPU", [("src/vecsift/scheduling/workers.py", "RingWorker")]),
    ("queue of work units claimed by several backends", [("src/vecsift/scheduling/work_queue.py", "WorkQueue")]),
    ("disable padding and set truncation of the tokenizer", [("src/vecsift/tokenizer.py", "Tokenizer")]),
    ("validate token ids, attention mask and lengths of one input", [("src/vecsift/encoding.py", "Encoding")]),
    ("read tensors from a safetensors file through a memory map", [("src/vecsift/models/weights.py", "SafetensorsWeights")]),
    ("resolve a model name to a local folder or the Hugging Face cache", [("src/vecsift/models/resolve.py", "resolve_model_dir")]),
    ("read the pooling mode from the sentence-transformers configuration", [("src/vecsift/models/config.py", "_pooling_mode"), ("src/vecsift/models/config.py", "_pooling_from_sentence_transformers")]),
    ("rotary position embedding tables for ModernBERT", [("src/vecsift/backend/arch/modern_bert.py", "rope_tables")]),
    ("write output files under a temporary name and rename them when complete", [("src/vecsift/cli/output.py", "atomic_file")]),
    ("quantize activations to int8 with one scale per token", [("src/vecsift/backend/driver/torch_driver.py", "quantize_per_token")]),
    ("embed texts while they are still being read with bounded memory", [("src/vecsift/scheduling/stream.py", "EmbeddingStream"), ("src/vecsift/scheduling/stream.py", "embed_stream")]),
    ("pack inputs without padding using cumulative sequence lengths", [("src/vecsift/backend/token_batch.py", "TokenBatch")]),
    ("detect binary files and minified files before indexing", [("src/vecsift/search/walk.py", "read_source")]),
    ("choose bf16 when the CPU supports AMX", [("src/vecsift/search/precision.py", "index_precision")]),
]

NPM: list[Question] = [
    ("mark a published package version as deprecated", [("lib/commands/deprecate.js", None)]),
    ("list dependencies that have newer versions available", [("lib/commands/outdated.js", None)]),
    ("add or remove a distribution tag on a package", [("lib/commands/dist-tag.js", None)]),
    ("find duplicated dependencies in the tree", [("lib/commands/find-dupes.js", None), ("lib/commands/dedupe.js", None)]),
    ("show or change who owns a package on the registry", [("lib/commands/owner.js", None)]),
    ("open the package's source repository in a web browser", [("lib/commands/repo.js", None), ("lib/utils/open-url.js", None)]),
    ("format a number of bytes as kB or MB", [("lib/utils/format-bytes.js", None)]),
    ("suggest the closest command when the user makes a typo", [("lib/utils/did-you-mean.js", None)]),
    ("explain why a package is installed and what depends on it", [("lib/commands/explain.js", None), ("lib/utils/explain-dep.js", None)]),
    ("check that the registry is reachable", [("lib/commands/ping.js", None), ("lib/utils/ping.js", None)]),
    ("ask the user for username, password and email on the terminal", [("lib/utils/read-user-info.js", None)]),
    ("write debug logs to a file and remove old log files", [("lib/utils/log-file.js", None)]),
    ("print installed packages as a tree", [("lib/commands/ls.js", None)]),
    ("remove extraneous packages that are not dependencies", [("lib/commands/prune.js", None)]),
    ("bump the version in package.json and create a git tag", [("lib/commands/version.js", None)]),
    ("upload a package tarball to the registry", [("lib/commands/publish.js", None)]),
    ("create a tarball from a package folder", [("lib/commands/pack.js", None)]),
    ("search the registry for packages by keyword", [("lib/commands/search.js", None), ("lib/utils/format-search-stream.js", None)]),
    ("run a script from package.json", [("lib/commands/run.js", None), ("lib/lifecycle-cmd.js", None)]),
    ("create, list and revoke authentication tokens", [("lib/commands/token.js", None)]),
    ("generate a software bill of materials", [("lib/commands/sbom.js", None)]),
    ("report known security vulnerabilities of dependencies", [("lib/commands/audit.js", None), ("lib/utils/audit-error.js", None)]),
    ("print how to fund the maintainers of dependencies", [("lib/commands/fund.js", None)]),
    ("diagnose common problems with the npm environment", [("lib/commands/doctor.js", None)]),
]
