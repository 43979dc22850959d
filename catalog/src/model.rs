//! The catalog model: what tarn knows about databases and tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, TableRef};

/// A database (Glue/Athena "database", Postgres "schema"): a namespace of tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// Who owns a table's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// tarn owns the data: a Delta table under the warehouse, dropped with the table.
    Managed,
    /// The data lives elsewhere; dropping the table leaves it alone.
    External,
}

/// The file format of a table's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    Parquet,
    Csv,
    /// Newline-delimited JSON.
    Json,
    Delta,
}

impl TableFormat {
    /// Parses the `STORED AS` keyword (case-insensitive); `NDJSON` is accepted for JSON.
    pub fn from_stored_as(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PARQUET" => Some(Self::Parquet),
            "CSV" => Some(Self::Csv),
            "JSON" | "NDJSON" => Some(Self::Json),
            "DELTA" | "DELTALAKE" => Some(Self::Delta),
            _ => None,
        }
    }

    /// The `STORED AS` keyword for this format.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parquet => "PARQUET",
            Self::Csv => "CSV",
            Self::Json => "JSON",
            Self::Delta => "DELTA",
        }
    }
}

/// A table: where its data is, in what format, and with what schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub database: String,
    pub name: String,
    pub kind: TableKind,
    pub format: TableFormat,
    /// A URL (`file:///…`, `s3://…`); a folder or a single file.
    pub location: String,
    /// The full table schema, partition columns included (they come last).
    pub schema: SchemaRef,
    /// Hive-style partition columns (`key=value/` folders), in folder order.
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// Format options (e.g. `format.has_header`), as given to `CREATE EXTERNAL TABLE … OPTIONS`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Free-form table properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Table {
    pub fn table_ref(&self) -> TableRef {
        TableRef::new(&self.database, &self.name)
    }

    /// The schema of the data files: the table schema without partition columns.
    pub fn file_schema(&self) -> Schema {
        let fields = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.partition_columns.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>();
        Schema::new_with_metadata(fields, self.schema.metadata().clone())
    }
}

/// An immutable view of the whole catalog at one version. Planning reads only this.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    /// The last log entry applied (0: nothing yet).
    pub version: u64,
    pub databases: BTreeMap<String, Database>,
    /// Keyed by (database, table).
    #[serde(with = "table_map")]
    pub tables: BTreeMap<(String, String), Arc<Table>>,
}

impl CatalogSnapshot {
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(name)
    }

    pub fn table(&self, database: &str, table: &str) -> Option<&Arc<Table>> {
        self.tables.get(&(database.to_owned(), table.to_owned()))
    }

    /// Tables of one database, in name order.
    pub fn tables_in(&self, database: &str) -> impl Iterator<Item = &Arc<Table>> {
        self.tables
            .range((database.to_owned(), String::new())..)
            .take_while(move |((db, _), _)| db == database)
            .map(|(_, t)| t)
    }

    /// Checks that `op` can be applied, then applies it.
    pub(crate) fn apply(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::CreateDatabase { database } => {
                validate_name(&database.name)?;
                if self.databases.contains_key(&database.name) {
                    return Err(Error::DatabaseExists {
                        database: database.name.clone(),
                    });
                }
                self.databases
                    .insert(database.name.clone(), database.clone());
            }
            Op::DropDatabase { name, cascade } => {
                if !self.databases.contains_key(name) {
                    return Err(Error::DatabaseNotFound {
                        database: name.clone(),
                    });
                }
                let tables: Vec<_> = self.tables_in(name).map(|t| t.name.clone()).collect();
                if !tables.is_empty() && !cascade {
                    return Err(Error::DatabaseNotEmpty {
                        database: name.clone(),
                        tables: tables.len(),
                    });
                }
                for t in tables {
                    self.tables.remove(&(name.clone(), t));
                }
                self.databases.remove(name);
            }
            Op::CreateTable { table } => {
                validate_name(&table.name)?;
                if !self.databases.contains_key(&table.database) {
                    return Err(Error::DatabaseNotFound {
                        database: table.database.clone(),
                    });
                }
                let key = (table.database.clone(), table.name.clone());
                if self.tables.contains_key(&key) {
                    return Err(Error::TableExists {
                        table: table.table_ref(),
                    });
                }
                self.tables.insert(key, Arc::new(table.clone()));
            }
            Op::DropTable { table } => {
                let key = (table.database.clone(), table.table.clone());
                if self.tables.remove(&key).is_none() {
                    return Err(Error::TableNotFound {
                        table: table.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// One change to the catalog. A log entry holds one or more, applied atomically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateDatabase { database: Database },
    DropDatabase { name: String, cascade: bool },
    CreateTable { table: Table },
    DropTable { table: TableRef },
}

/// Names are stored as given; they must be usable as a folder name in the warehouse.
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name.len() > 255 {
        return invalid("must be at most 255 bytes");
    }
    if name.starts_with('_') || name.starts_with('.') {
        return invalid("must not start with '_' or '.' (reserved for tarn's own files)");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return invalid("must not contain '/', '\\' or control characters");
    }
    Ok(())
}

mod table_map {
    //! JSON maps need string keys; tables are stored as a list.
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Table;

    type Map = BTreeMap<(String, String), Arc<Table>>;

    pub(super) fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<&Table> = map.values().map(|t| t.as_ref()).collect();
        list.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let list = Vec::<Table>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|t| ((t.database.clone(), t.name.clone()), Arc::new(t)))
            .collect())
    }
}
