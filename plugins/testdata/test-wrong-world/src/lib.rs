//! A well-formed component for a world that is not one of berth's: it exports
//! a `greet` function and nothing else. The host must refuse to install it as
//! a `scanner-check` plugin.

wit_bindgen::generate!({
    inline: "
        package berth-test:greeter@0.1.0;

        world greeter {
            export greet: func() -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet() -> String {
        "hello".to_string()
    }
}

export!(Greeter);
