//! The moderator page at `/ui/`: a conference list, one conference's participants with
//! talking indicators and levels, mute / deaf / kick, and the relationship matrix as a
//! grid whose cells change on a click.
//!
//! The page is three static files compiled into the binary (`include_str!`; no runtime
//! file reads, no CDN, no build step): `index.html`, `app.js` (plain JavaScript) and
//! `style.css`, in `crates/mixminus-control/ui/`. It calls the same API as any client:
//! the token is typed in once, kept in the tab's `sessionStorage` and sent only as
//! `X-Auth-Token` (never in a URL; the event stream is read with `fetch`, since
//! `EventSource` cannot send headers). Live state comes from the conference's server-sent
//! events (talking, joins, relationships) plus a read of the participant list every 400 ms
//! for the levels (`conference_channel_vars.current_energy`).
//!
//! Every answer from these routes carries the headers a browser-facing service sends:
//! a Content-Security-Policy that allows only this origin's own script, style and API
//! (no inline script or style, no framing: `frame-ancestors 'none'`), `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`,
//! `Cross-Origin-Opener-Policy` and `-Resource-Policy: same-origin`, a `Permissions-Policy`
//! that allows the microphone to this origin only, and `Cache-Control: no-cache`.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The page's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; media-src 'self' blob:; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");

/// The routes `/ui` (a redirect), `/ui/` and `/ui/{file}`, every answer with
/// [`security_headers`].
pub fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route("/ui/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
        .layer(axum::middleware::map_response(security_headers))
}

fn asset(file: &str) -> Response {
    let (body, kind) = match file {
        "index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Adds the browser-facing headers (see the [module docs](self)) to `response`.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
        (
            HeaderName::from_static("permissions-policy"),
            "microphone=(self), camera=(), geolocation=(), payment=(), usb=()",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        router().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn assets_with_headers() {
        for (path, kind) in [
            ("/ui/", "text/html"),
            ("/ui/index.html", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let r = get(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        }
        let r = get("/ui/../Cargo.toml").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(get("/ui").await.status(), StatusCode::PERMANENT_REDIRECT);
    }

    #[test]
    fn no_inline_script_or_style() {
        // The CSP forbids them; the page must not need them.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("onclick"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    }
}
