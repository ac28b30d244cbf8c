//! The functions' HTTPS client: the SDK's default client (hyper 1, rustls with aws-lc, the
//! connector settings and sleep of each SDK client, the proxy from the environment) with one
//! change: it trusts the five Amazon Trust Services roots compiled into the binary instead of
//! the system's root store.
//!
//! Why: the default client reads and parses the whole system store (`/etc/ssl/certs`, about
//! 150 roots in a bundle plus a file per root) when a function starts, because the credential
//! chain validates its HTTP client by building a connector. That was most of the functions'
//! init (BENCHMARKS.md, "Where the Rust init goes"). Every AWS service endpoint presents a
//! certificate issued by Amazon Trust Services (S3 was the last to move, in June 2022: AWS
//! Storage Blog, "Amazon S3 and Amazon CloudFront service certificates migrating to Amazon
//! Trust Services"), so these roots are all the functions need, and fewer roots to trust is
//! no loss. Plain HTTP (the local stage's `AWS_ENDPOINT_URL`) is unchanged. The operator's CLI
//! keeps the system store ([`system_roots_client`]): it may run behind a proxy that presents
//! its own CA.
//!
//! `amazon-trust-services.pem` holds Amazon Root CA 1-4 and Starfield Services Root
//! Certificate Authority - G2, as Mozilla's store ships them (Debian ca-certificates
//! 20230311); the test below checks each against the SHA-256 fingerprint published at
//! <https://www.amazontrust.com/repository/>.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The roots the functions trust, PEM.
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("amazon-trust-services.pem");

/// The HTTPS client every SDK client of a function uses (through its `SdkConfig`).
pub fn client() -> SharedHttpClient {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AMAZON_TRUST_SERVICES);
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context with a trust store is always valid");
    client_trusting(context)
}

/// The operator's HTTPS client: the SDK's default client exactly, the system's root store
/// included. The SDK crates are built without their default client (Cargo.toml), so the
/// CLI's configuration is given this one.
pub fn system_roots_client() -> SharedHttpClient {
    client_trusting(TlsContext::default())
}

fn client_trusting(context: TlsContext) -> SharedHttpClient {
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest, Sha256};

    fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
        let text = std::str::from_utf8(pem).unwrap();
        text.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap()
            })
            .collect()
    }

    /// Answers one HTTP request on 127.0.0.1 with `body` (JSON), and hands back what it read.
    fn one_answer(body: &'static str) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&request).contains("}") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the client hung up before its body");
                request.extend_from_slice(&buf[..n]);
            }
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, served)
    }

    /// The client carries a real SDK call end to end over plain HTTP (the local stage's
    /// `AWS_ENDPOINT_URL`), on its first request, through the SDK's own connector.
    #[tokio::test(flavor = "current_thread")]
    async fn a_first_call_over_http_is_answered() {
        let (url, served) = one_answer(
            r#"{"executionArn":"arn:aws:states:us-east-1:1:execution:sm:r1","stateMachineArn":"arn:aws:states:us-east-1:1:stateMachine:sm","status":"RUNNING","startDate":1.7E9}"#,
        );
        let config = aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sfn::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(url)
            .http_client(client())
            .build();
        let sfn = aws_sdk_sfn::Client::from_conf(config);
        let call = crate::aws::sfn::execution(&sfn, "arn:aws:states:us-east-1:1:execution:sm:r1");
        let execution = tokio::time::timeout(std::time::Duration::from_secs(10), call)
            .await
            .expect("answered within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(execution.status, "RUNNING");
        let request = served.join().unwrap();
        assert!(request.starts_with("POST / HTTP/1.1"), "{request}");
        assert!(
            request.contains("AWSStepFunctions.DescribeExecution"),
            "{request}"
        );
    }

    #[test]
    fn the_roots_are_the_five_amazon_trust_services_roots() {
        let fingerprints: Vec<String> = ders(AMAZON_TRUST_SERVICES)
            .iter()
            .map(|der| {
                Sha256::digest(der)
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect()
            })
            .collect();
        assert_eq!(
            fingerprints,
            [
                // Amazon Root CA 1 .. 4, Starfield Services Root Certificate Authority - G2
                "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E",
                "1BA5B2AA8C65401A82960118F80BEC4F62304D83CEC4713A19C39C011EA46DB4",
                "18CE6CFE7BF14E60B2E347B8DFE868CB31D02EBB3ADA271569F50343B46DB3A4",
                "E35D28419ED02025CFA69038CD623962458DA5C695FBDEA3C22B0BFB25897092",
                "568D6905A2C88708A4B3025190EDCFEDB1974A606A13C6E5290FCB2AE63EDAB5",
            ]
        );
    }
}
