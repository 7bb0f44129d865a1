//! The web page of each role (`GET /`): HTML, CSS and a little JavaScript compiled into the
//! binary, nothing fetched from elsewhere. The page only reads (`/api/<role>/status`, the
//! searches), so it works unchanged when a cluster key guards the writes.

use crate::config::Role;
use crate::http::Reply;

/// The page around a role's sections (`{role}`, `{sections}`), filled in once per process.
const PAGE: &str = include_str!("page/page.html");
const SUPERNODE: &str = include_str!("page/supernode.html");
const NODE: &str = include_str!("page/node.html");
const CSS: &str = include_str!("page/page.css");
const JS: &str = include_str!("page/page.js");

/// Only this origin's scripts, styles and fetches: a name shown on the page (a node's, a
/// file's) can never run as code, whatever it holds.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One of the page's files (`/`, `/index.html`, `/page.css`, `/page.js`: [`Route::Page`]) for
/// `role`.
///
/// [`Route::Page`]: crate::api::Route::Page
pub fn reply(path: &str, role: Role) -> Reply {
    static PAGES: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let [supernode, node] = PAGES.get_or_init(|| {
        [("supernode", SUPERNODE), ("node", NODE)]
            .map(|(role, sections)| PAGE.replace("{role}", role).replace("{sections}", sections))
    });
    let (text, content_type) = match (path, role) {
        ("/page.css", _) => (CSS, "text/css; charset=utf-8"),
        ("/page.js", _) => (JS, "text/javascript; charset=utf-8"),
        (_, Role::Supernode) => (supernode.as_str(), "text/html; charset=utf-8"),
        (_, Role::Node) => (node.as_str(), "text/html; charset=utf-8"),
    };
    Reply::typed(text.as_bytes(), content_type)
        .with_header("Content-Security-Policy", POLICY.into())
        .with_header("X-Content-Type-Options", "nosniff".into())
        .with_header("Cache-Control", "no-cache".into())
}
