//! The web UI at `/ui`: plain HTML, CSS and JavaScript modules from `net/admin/ui/`, embedded in
//! the binary. `GET /ui` redirects to `/ui/`, which serves `index.html`; `GET /ui/{file}` serves
//! the named asset, or answers 404 `{"code": "not_found", …}` like every other admin route.
//!
//! The assets hold no data — the page reads everything through the guarded admin API with the
//! operator's token — so they are served without one (see [`is_public`]).

use crate::ApiError;
use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($name:literal => $content_type:expr),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../ui/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the UI is made of.
const ASSETS: &[Asset] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "overview.js" => JS,
    "invocations.js" => JS,
    "invocation.js" => JS,
    "timeline.js" => JS,
    "state.js" => JS,
    "deployments.js" => JS,
    "sql.js" => JS,
    "cluster.js" => JS,
    "schedules.js" => JS,
    "limits.js" => JS,
};

/// Whether `request` asks for a UI asset, which needs no bearer token.
pub(crate) fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && (path == "/ui" || path.starts_with("/ui/"))
}

fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// Registers the UI's routes.
pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/ui", web::get().to(redirect))
        .route("/ui/", web::get().to(index))
        .route("/ui/{file}", web::get().to(file));
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

async fn index() -> HttpResponse {
    serve(asset("index.html").expect("index.html is embedded"))
}

async fn file(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match asset(&name) {
        Some(asset) => serve(asset),
        None => HttpResponse::NotFound().json(ApiError::new(
            "not_found",
            format!("no UI file {}", request.path()),
        )),
    }
}

fn serve(asset: &'static Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        // The files change with the binary; revalidating costs little on a loopback admin port.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_content_type() {
        assert!(
            asset("index.html")
                .unwrap()
                .content_type
                .starts_with("text/html")
        );
        assert!(
            asset("style.css")
                .unwrap()
                .content_type
                .starts_with("text/css")
        );
        assert_eq!(asset("app.js").unwrap().content_type, JS);
        assert!(asset("nope.js").is_none());
        assert!(asset("../lib.rs").is_none());
    }

    /// Every module the UI imports, and every file `index.html` links, is embedded.
    #[test]
    fn every_referenced_file_is_embedded() {
        for file in ASSETS {
            let text = std::str::from_utf8(file.body).expect("UTF-8 assets");
            for quote in ['"', '\''] {
                let opening = format!("{quote}./");
                for (at, _) in text.match_indices(&opening) {
                    let rest = &text[at + opening.len()..];
                    let name = &rest[..rest.find(quote).unwrap_or(rest.len())];
                    assert!(asset(name).is_some(), "{} refers to {name}", file.name);
                }
            }
        }
    }

    #[test]
    fn only_ui_reads_are_public() {
        assert!(is_public(&Method::GET, "/ui"));
        assert!(is_public(&Method::GET, "/ui/app.js"));
        assert!(!is_public(&Method::POST, "/ui/"));
        assert!(!is_public(&Method::GET, "/uix"));
        assert!(!is_public(&Method::GET, "/query"));
    }
}
