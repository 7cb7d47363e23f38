//! `annals-tests`: black-box tests of whole programs (in `tests/`) and the child processes they
//! drive (in `src/bin/`). The library itself is empty.
