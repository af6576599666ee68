//! The PostgreSQL backend: connecting (TLS through rustls on ring), binding [`Param`]s, reading rows.

use std::error::Error as StdError;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, Config, GenericClient};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use crate::value::{Param, Row, ToParam, Value};

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Our own URL parameter (libpq's name): a PEM file of CA certificates to trust besides the system's.
const ROOT_CERT_PARAM: &str = "sslrootcert";

/// How to connect: the client configuration and the TLS connector, built once per [`crate::Database`].
pub(crate) struct Connector {
    config: Config,
    tls: MakeRustlsConnect,
}

impl Connector {
    /// Reads `url`. TLS follows its `sslmode` (`disable`, `prefer`, the default, or `require`); the server
    /// certificate is always verified, against the system's roots, the webpki roots and `sslrootcert`.
    pub(crate) fn new(url: &url::Url) -> Result<Self> {
        let mut url = url.clone();
        let root_file = take_query_param(&mut url, ROOT_CERT_PARAM);
        let mut config = Config::from_str(url.as_str()).map_err(|e| Error::Location {
            location: crate::Location::Postgres(url.clone()).to_string(),
            why: e.to_string(),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("keygate");
        }
        // Probes find a peer that vanished without closing the socket (the change feed's connection
        // otherwise only reads).
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let tls = MakeRustlsConnect::new(tls_config(root_file.as_deref().map(Path::new))?);
        Ok(Self { config, tls })
    }

    pub(crate) fn connect(&self) -> Result<Client> {
        Ok(self.config.connect(self.tls.clone())?)
    }
}

/// Removes `name=VALUE` from the query of `url` and returns VALUE.
fn take_query_param(url: &mut url::Url, name: &str) -> Option<String> {
    let mut found = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == name {
                found = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if found.is_some() {
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
    }
    found
}

fn tls_config(root_file: Option<&Path>) -> Result<ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let (_, ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if ignored > 0 {
        tracing::debug!(ignored, "some system CA certificates could not be parsed");
    }
    if let Some(file) = root_file {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Tls(format!("{ROOT_CERT_PARAM} {}: {e}", file.display())))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!(
                "{ROOT_CERT_PARAM} {}: no PEM certificate in the file",
                file.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("{ROOT_CERT_PARAM} {}: {e}", file.display())))?;
        }
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The statements a transaction (or a bare connection, in autocommit) runs, object-safe so [`crate::Tx`]
/// hides the client's lifetimes.
pub(crate) trait PgTx {
    fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64>;
    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement>;
    fn execute_prepared(
        &mut self,
        statement: &postgres::Statement,
        params: &[&dyn ToParam],
    ) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>>;
    fn batch(&mut self, sql: &str) -> Result<()>;
}

impl<C: GenericClient> PgTx for C {
    fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64> {
        let params: Vec<Param<'_>> = params.iter().map(|p| p.to_param()).collect();
        Ok(GenericClient::execute(self, sql, &as_sql(&params))?)
    }

    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement> {
        Ok(GenericClient::prepare(self, sql)?)
    }

    fn execute_prepared(
        &mut self,
        statement: &postgres::Statement,
        params: &[&dyn ToParam],
    ) -> Result<u64> {
        let params: Vec<Param<'_>> = params.iter().map(|p| p.to_param()).collect();
        Ok(GenericClient::execute(self, statement, &as_sql(&params))?)
    }

    fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
        let params: Vec<Param<'_>> = params.iter().map(|p| p.to_param()).collect();
        GenericClient::query(self, sql, &as_sql(&params))?
            .iter()
            .map(row)
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.batch_execute(sql)?)
    }
}

fn as_sql<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn row(row: &postgres::Row) -> Result<Row> {
    let values = row
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| column_value(row, i, column.type_()))
        .collect::<Result<_>>()?;
    Ok(Row(values))
}

fn column_value(row: &postgres::Row, i: usize, ty: &Type) -> Result<Value> {
    let value = match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Integer(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Integer(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Integer(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| Value::Real(v.into())),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        }
        _ => {
            return Err(Error::Column {
                index: i,
                expected: "INTEGER, REAL, TEXT or BYTEA (cast it in the query)",
                found: "another PostgreSQL type",
            })
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

/// Sends each kind of value as the parameter type the server inferred, converting integers to the
/// column's width (refusing one that does not fit) and to `boolean`.
impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Integer(v) => match *ty {
                Type::INT2 => i16::try_from(v)?.to_sql_checked(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql_checked(ty, out),
                Type::BOOL => (v != 0).to_sql_checked(ty, out),
                Type::FLOAT8 => (v as f64).to_sql_checked(ty, out),
                _ => v.to_sql_checked(ty, out),
            },
            Param::Real(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::Blob(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, which knows which kind it holds.
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_ours_and_the_rest_goes_to_the_client() {
        let mut url =
            url::Url::parse("postgres://db/k?sslmode=require&sslrootcert=/ca.pem&user=kg").unwrap();
        assert_eq!(
            take_query_param(&mut url, ROOT_CERT_PARAM).as_deref(),
            Some("/ca.pem")
        );
        assert_eq!(url.as_str(), "postgres://db/k?sslmode=require&user=kg");
        let mut url = url::Url::parse("postgres://db/k?sslrootcert=/ca.pem").unwrap();
        take_query_param(&mut url, ROOT_CERT_PARAM);
        assert_eq!(url.as_str(), "postgres://db/k");
    }

    #[test]
    fn a_missing_root_file_is_an_error_naming_it() {
        let url = url::Url::parse("postgres://db/k?sslrootcert=/nonexistent/ca.pem").unwrap();
        let err = Connector::new(&url).err().unwrap().to_string();
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
    }
}
