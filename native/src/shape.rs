//! A writer schema as the payload checker walks it.
//!
//! Only the Avro types the contract schemas use are supported (and the few
//! primitives next to them); anything else is refused when the decoder is
//! built, so a schema change that the checker does not understand fails
//! loudly instead of being decoded differently from the reference.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// One Avro type, reduced to what decoding its bytes needs.
#[derive(Clone, Debug)]
pub enum Shape {
    Null,
    Boolean,
    /// An Avro `int`: read as a long, then required to fit 32 bits.
    Int,
    Long,
    /// A `long` with logicalType `timestamp-micros`.
    Timestamp,
    Float,
    Double,
    Bytes,
    String,
    Enum {
        symbols: Vec<String>,
    },
    Array(Box<Shape>),
    Union(Vec<Shape>),
    Record(Vec<Field>),
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub shape: Shape,
    /// The field declares a default, so a JSON record may leave it out.
    pub has_default: bool,
}

impl Shape {
    /// Whether a value of this type always takes at least one byte. Array items
    /// must, or a huge block count would loop without reading anything.
    pub fn takes_bytes(&self) -> bool {
        match self {
            Self::Null => false,
            Self::Record(fields) => fields.iter().any(|field| field.shape.takes_bytes()),
            _ => true,
        }
    }

    /// Whether values of this field are integers (directly or as a union branch).
    pub fn is_integer(&self) -> bool {
        match self {
            Self::Int | Self::Long => true,
            Self::Union(branches) => branches.iter().any(Self::is_integer),
            _ => false,
        }
    }

    /// The type in words, as `schemas.codec` names it in its messages
    /// (`null or int (32-bit)`); named types by their kind of type.
    pub fn describe(&self) -> String {
        match self {
            Self::Null => "null".to_string(),
            Self::Boolean => "boolean".to_string(),
            Self::Int => "int (32-bit)".to_string(),
            Self::Long => "long (64-bit)".to_string(),
            Self::Timestamp => "a timezone-aware datetime".to_string(),
            Self::Float => "float".to_string(),
            Self::Double => "double".to_string(),
            Self::Bytes => "bytes".to_string(),
            Self::String => "string".to_string(),
            Self::Enum { .. } => "enum".to_string(),
            Self::Array(items) => format!("array of {}", items.describe()),
            Self::Union(branches) => branches
                .iter()
                .map(Self::describe)
                .collect::<Vec<_>>()
                .join(" or "),
            Self::Record(_) => "record".to_string(),
        }
    }
}

/// The top-level record of a schema given as JSON text.
pub fn parse(schema_json: &str) -> Result<Vec<Field>, String> {
    let value: Value = serde_json::from_str(schema_json).map_err(|e| format!("not JSON: {e}"))?;
    match Parser::default().shape(&value, "")? {
        Shape::Record(fields) => Ok(fields),
        _ => Err("the top-level type must be a record".to_string()),
    }
}

/// Named types (records and enums) seen so far, so later references resolve.
#[derive(Default)]
struct Parser {
    named: HashMap<String, Shape>,
}

impl Parser {
    fn shape(&mut self, value: &Value, namespace: &str) -> Result<Shape, String> {
        match value {
            Value::String(name) => self.by_name(name, namespace),
            Value::Array(branches) => branches
                .iter()
                .map(|branch| self.shape(branch, namespace))
                .collect::<Result<_, _>>()
                .map(Shape::Union),
            Value::Object(object) => self.complex(object, namespace),
            other => Err(format!("{other} is not an Avro type")),
        }
    }

    fn by_name(&self, name: &str, namespace: &str) -> Result<Shape, String> {
        Ok(match name {
            "null" => Shape::Null,
            "boolean" => Shape::Boolean,
            "int" => Shape::Int,
            "long" => Shape::Long,
            "float" => Shape::Float,
            "double" => Shape::Double,
            "bytes" => Shape::Bytes,
            "string" => Shape::String,
            _ => self
                .named
                .get(&full_name(name, namespace))
                .cloned()
                .ok_or_else(|| format!("unknown or unsupported type {name:?}"))?,
        })
    }

    fn complex(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<Shape, String> {
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let logical = object.get("logicalType").and_then(Value::as_str);
        match (kind, logical) {
            ("long", Some("timestamp-micros")) => return Ok(Shape::Timestamp),
            (_, Some(other)) => return Err(format!("unsupported logicalType {other:?}")),
            _ => {}
        }
        let namespace = object
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        let shape = match kind {
            "record" => Shape::Record(self.fields(object, namespace)?),
            "enum" => Shape::Enum {
                symbols: object
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or("an enum needs symbols")?
                    .iter()
                    .map(|symbol| symbol.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or("enum symbols must be strings")?,
            },
            "array" => {
                let items = self.shape(
                    object.get("items").ok_or("an array needs items")?,
                    namespace,
                )?;
                if !items.takes_bytes() {
                    return Err("array items that take no bytes are not supported".to_string());
                }
                Shape::Array(Box::new(items))
            }
            _ => return self.by_name(kind, namespace),
        };
        if let Some(name) = object.get("name").and_then(Value::as_str) {
            self.named.insert(full_name(name, namespace), shape.clone());
        }
        Ok(shape)
    }

    fn fields(
        &mut self,
        record: &Map<String, Value>,
        namespace: &str,
    ) -> Result<Vec<Field>, String> {
        let fields = record
            .get("fields")
            .and_then(Value::as_array)
            .ok_or("a record needs fields")?;
        fields
            .iter()
            .map(|field| {
                let name = field
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("a field needs a name")?;
                let declared = field
                    .get("type")
                    .ok_or_else(|| format!("field {name} has no type"))?;
                let shape = self
                    .shape(declared, namespace)
                    .map_err(|e| format!("{name}: {e}"))?;
                Ok(Field {
                    name: name.to_string(),
                    shape,
                    has_default: field.get("default").is_some(),
                })
            })
            .collect()
    }
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}
