//! KIP-430 authorized operations: Kafka's `AclOperation` codes (apache/kafka
//! `clients/.../common/acl/AclOperation.java`) and the 32-bit field a Metadata, DescribeCluster,
//! DescribeGroups or ConsumerGroupDescribe response carries when the client asks for it
//! (`Utils.to32BitField`: bit `code` set for each operation allowed).
//!
//! strand has no authorizer yet, and with none Kafka answers every operation the resource type
//! supports (`AuthHelper.authorizedOperations` with `authorizer = None`, the sets of
//! `AclEntry.supportedOperations`). ACLs, when they come, narrow these sets per request.

/// What a response carries when the client did not ask (the schemas' default, Int.MinValue).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// `AclOperation` codes (UNKNOWN 0, ANY 1 and ALL 2 never appear in an answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

/// The resource types whose operations strand's responses report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
}

impl ResourceType {
    /// `AclEntry.supportedOperations(resourceType)`.
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[Read, Write, Create, Describe, Delete, Alter, DescribeConfigs, AlterConfigs],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[Create, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, Alter, Describe],
        }
    }
}

/// `Utils.to32BitField` of a set of operations.
pub fn bit_field(operations: &[AclOperation]) -> i32 {
    operations.iter().fold(0i32, |field, op| field | (1i32 << (*op as u8)))
}

/// The field for one resource of `resource_type`, when the client asked (`include`), else the
/// omitted sentinel. With no authorizer every supported operation is allowed.
pub fn authorized_operations(resource_type: ResourceType, include: bool) -> i32 {
    if include {
        bit_field(resource_type.supported_operations())
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers a Kafka 4 broker without an authorizer answers (DescribeAuthorizedOperationsTest
    /// compares with the same sets).
    #[test]
    fn full_sets_are_kafkas() {
        assert_eq!(authorized_operations(ResourceType::Topic, true), 0b1101_1111_1000); // 3576
        assert_eq!(authorized_operations(ResourceType::Group, true), 0b1101_0100_1000); // 3400
        assert_eq!(authorized_operations(ResourceType::Cluster, true), 0b1_1111_1010_0000); // 8096
        assert_eq!(authorized_operations(ResourceType::Topic, false), -2147483648);
    }
}
