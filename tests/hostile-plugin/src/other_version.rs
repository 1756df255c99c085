//! A component of a WIT package version the host does not speak.

wit_bindgen::generate!({
    inline: "
        package deckhouse:packages-mirror@0.2.0;
        interface events {
            log: func(message: string);
        }
        world packages-mirror {
            import events;
            export pull-packages: func() -> string;
            export pull-package-versions: func() -> string;
        }
    ",
    world: "packages-mirror",
});

struct Other;

impl Guest for Other {
    fn pull_packages() -> String {
        deckhouse::packages_mirror::events::log("0.2.0");
        String::new()
    }

    fn pull_package_versions() -> String {
        String::new()
    }
}

export!(Other);
