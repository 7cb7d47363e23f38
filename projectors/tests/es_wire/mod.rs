//! Wire-level tests of the Elasticsearch view backend. No Elasticsearch server can run on the
//! machines that test annals, so a local HTTP server (`server.rs`) records every request and
//! answers with bodies shaped like the published examples of the Elasticsearch specification
//! (github.com/elastic/elasticsearch-specification, `specification/**/examples/response/*.yaml`;
//! each answer below names the one it follows). The tests assert the exact requests annals sends
//! (golden files under `tests/golden/elasticsearch/`; `UPDATE_GOLDEN=1` rewrites them) and what it
//! does with every answer.

mod health;
mod hosting;
mod reads;
mod rebuild;
mod runtime;
mod server;
mod writes;
