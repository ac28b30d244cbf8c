//! The HTTP client every SDK client of a function shares: the SDK's own default HTTPS client,
//! built as the SDK builds it (hyper 1, rustls with aws-lc, the proxy from the environment,
//! the connector settings and sleep of the calling client), with one difference: the TLS
//! connector, and with it the root certificate store, is built by the first request that
//! needs it, not when a client or the credential chain is constructed.
//!
//! The SDK's client validates its base configuration by building a connector and throwing
//! it away ("so that native certs load at client initialization time"): `aws_config`'s
//! credential chain constructs an STS client while the configuration loads, so every
//! function read and parsed the system root store (`/etc/ssl/certs`) at init, and every
//! client construction built one more connector that no request used. Here that
//! validation is left out; the request's own connector (cached per connector settings, as
//! before) is the only one built. Endpoints, retry, timeouts, credentials and region are
//! untouched: they are not the HTTP client's.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The HTTP client to load the SDK configuration with.
pub fn client() -> SharedHttpClient {
    first_request(sdk_default())
}

/// `inner`, whose connectors are built only by requests.
fn first_request(inner: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(FirstRequest(inner))
}

/// The SDK's default HTTPS client for the latest behavior version
/// (`aws_smithy_runtime::client::http::default_https_client`, which is not public).
fn sdk_default() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[derive(Debug)]
struct FirstRequest(SharedHttpClient);

impl HttpClient for FirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use aws_smithy_types::body::SdkBody;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts what the SDK asks of an HTTP client; its connector answers every request 200
    /// with an empty S3 bucket listing.
    #[derive(Debug, Default)]
    struct Counting {
        validations: AtomicUsize,
        connectors: AtomicUsize,
    }

    #[derive(Debug)]
    struct Empty;

    impl HttpConnector for Empty {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            HttpConnectorFuture::ready(Ok(HttpResponse::new(
                200.try_into().unwrap(),
                SdkBody::from("<ListBucketResult><Name>b</Name></ListBucketResult>"),
            )))
        }
    }

    #[derive(Debug, Clone)]
    struct Shared(Arc<Counting>);

    impl HttpClient for Shared {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            self.0.connectors.fetch_add(1, Ordering::SeqCst);
            SharedHttpConnector::new(Empty)
        }

        fn validate_base_client_config(
            &self,
            _: &RuntimeComponentsBuilder,
            _: &ConfigBag,
        ) -> Result<(), BoxError> {
            self.0.validations.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn s3(http: SharedHttpClient) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKID", "secret", None, None, "test",
            ))
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    #[tokio::test]
    async fn a_client_builds_no_connector_until_its_first_request() {
        let counting = Arc::new(Counting::default());
        let client = s3(first_request(SharedHttpClient::new(Shared(
            counting.clone(),
        ))));
        assert_eq!(counting.validations.load(Ordering::SeqCst), 0);
        assert_eq!(counting.connectors.load(Ordering::SeqCst), 0);

        client.list_objects_v2().bucket("b").send().await.unwrap();
        client.list_objects_v2().bucket("b").send().await.unwrap();
        assert_eq!(counting.validations.load(Ordering::SeqCst), 0);
        assert!(counting.connectors.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn the_sdk_client_alone_validates_at_construction() {
        let counting = Arc::new(Counting::default());
        let _client = s3(SharedHttpClient::new(Shared(counting.clone())));
        assert_eq!(counting.validations.load(Ordering::SeqCst), 1);
    }
}
