//! The object-store registry: turns a URL into a store and a path inside it.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

/// Turns a user-supplied warehouse location into a URL: `file://`, `memory://`, or a local path
/// (relative paths are taken from the current directory; the folder is created if missing).
pub fn parse_location(location: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: location.to_owned(),
        reason,
    };
    if let Ok(url) = Url::parse(location)
        && url.scheme().len() > 1
    {
        return match url.scheme() {
            "file" | "memory" => Ok(url),
            other => Err(invalid(format!(
                "scheme {other:?} is not supported yet (file:// and memory:// are)"
            ))),
        };
    }
    let path = std::path::absolute(location).map_err(|e| invalid(e.to_string()))?;
    Url::from_directory_path(&path).map_err(|()| invalid("not an absolute path".to_owned()))
}

/// Opens the store behind `url`, rooted at the bucket (or filesystem root), and the path of
/// `url` inside it. Local folders are created if missing.
pub fn open_store(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|()| invalid("not a local path".to_owned()))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| invalid(format!("cannot create folder {}: {e}", dir.display())))?;
            let path = Path::from_url_path(url.path()).map_err(|e| invalid(e.to_string()))?;
            Ok((Arc::new(LocalFileSystem::new()), path))
        }
        "memory" => {
            let path = Path::from_url_path(url.path()).map_err(|e| invalid(e.to_string()))?;
            Ok((Arc::new(InMemory::new()), path))
        }
        other => Err(invalid(format!("scheme {other:?} is not supported yet"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_file_urls() {
        let url = parse_location("some/dir").expect("valid");
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/some/dir/"), "{url}");
    }

    #[test]
    fn unsupported_schemes_are_refused() {
        let err = parse_location("gopher://x/y").expect_err("refused");
        assert!(err.to_string().contains("gopher"), "{err}");
    }
}
